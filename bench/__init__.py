"""sealmq vs ActiveMQ STOMP-over-TLS benchmark (``python -m bench``)."""
