"""A real IMAP server for tests: Debian's Dovecot (``dovecot-imapd``, installed by ``make peers``) started
as an unprivileged process on a free loopback port, with a generated minimal configuration: one
passwd-file account, mail in a maildir under a temporary directory, no SSL, no chroot, its own base and
state directories (nothing of the system's Dovecot is used). Run as root (CI), it runs as ``nobody``."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    def __init__(self, username: str = "crm", password: str = "s3cret-imap") -> None:
        self.username = username
        self.password = password
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="zvonok-dovecot-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        if os.geteuid() == 0:  # never as root: the unprivileged account the system has for this
            account = pwd.getpwnam("nobody")
        else:
            account = pwd.getpwuid(os.geteuid())
        uid, gid = account.pw_uid, account.pw_gid
        (self.root / "mail").mkdir()
        (self.root / "users").write_text(f"{self.username}:{{PLAIN}}{self.password}\n")
        (self.root / "dovecot.conf").write_text(CONFIG.format(
            root=self.root, user=account.pw_name, group=grp.getgrgid(gid).gr_name, uid=uid, gid=gid, port=self.port))
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, uid, gid)
        with open(self.root / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                user=uid if os.geteuid() == 0 else None, group=gid if os.geteuid() == 0 else None)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot did not listen: {self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.root / "stderr.log", self.root / "dovecot.log")
                       if p.exists())

    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login(self.username, self.password)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver a message as a mail client or an MDA would (IMAP APPEND)."""
        conn = self.connect()
        try:
            typ, data = conn.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)
