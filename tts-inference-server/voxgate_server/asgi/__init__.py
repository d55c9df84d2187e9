"""The HTTP layer under the routes, none of it speech-specific: uvicorn's server with a clean stop
(``serve``) and its protocol with a bound on the request head (``http_protocol``), pure ASGI
middleware that never buffers a stream (``auth``, ``body_timeout``, ``trailing_slash``), a JSON body
parser that no body can turn into a 500 (``json_body``), and a 405's complete ``Allow`` header
(``allow``)."""
