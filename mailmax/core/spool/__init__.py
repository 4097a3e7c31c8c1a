"""The queue directory: accepted messages and their envelopes, written durably.

:mod:`.spool` is the queue directory the server uses, :mod:`.envelope` the envelope model kept
beside each message, :mod:`.writer` the group commit (run in a helper process by default) and
:mod:`.files` the file operations both share.
"""
