"""Benches of the service on the CPU: the Piper server, Kokoro, word timings, Wyoming, the manager,
the response cache and the Docker image."""
