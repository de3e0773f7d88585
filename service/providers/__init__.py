"""Inbound email providers: signature verification, normalisation and detection, with no I/O
and no clock of their own (`now` is passed in).

`base.Provider` is the protocol each provider module implements, once, as its `PROVIDER`
object; `registry.PROVIDERS` lists them in detection order. Routes, configuration, detection,
start-up checks and the OpenAPI operations all follow from that list (docs/inbound.md, "Adding
a provider").
"""
