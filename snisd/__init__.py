"""snisd: live video over poor links with the SNIS-896 progressive neural codec."""

__version__ = "0.1.0"
