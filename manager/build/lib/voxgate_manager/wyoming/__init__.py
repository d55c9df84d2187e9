"""Home Assistant's Wyoming protocol, served by the manager on its own TCP port (10200 by default).

``info`` builds the answer to ``describe``, ``handler`` serves one connection, ``server`` listens
and announces itself by zeroconf. Speech goes through ``voxgate_manager.speech_client``: the same
admission, lifecycle and proxy as an HTTP request.
"""
