"""Exceptions of the interop peer, in an importable module so that oslo clients
can rebuild them (allowed_remote_exmods=["peer_exceptions"])."""


class NoValidHost(Exception):
    """Nova-style: keeps its keyword arguments, which oslo sends as the
    failure's kwargs, and formats its message from them."""

    msg_fmt = "no valid host: %(reason)s"

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        super().__init__(message or self.msg_fmt % kwargs)
