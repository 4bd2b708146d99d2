"""The FIX 4.4 initiator of a led topic (docs/FIX.md): the codec, the session's
state in PostgreSQL under the leader's fence, and the session layer."""
