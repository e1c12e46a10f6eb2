"""Voicemail: mailboxes of extensions, their messages (WAV files + rows), MWI bodies, e-mail delivery."""
