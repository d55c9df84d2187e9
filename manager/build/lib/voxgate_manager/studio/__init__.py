"""The studio: a web page served by the manager at ``/`` (plain HTML, CSS and JavaScript in
``static/``, nothing from outside), talking to the application API."""
