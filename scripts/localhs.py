"""A real Synapse on 127.0.0.1, for the quickstart, the tests and the benchmarks.

Standard library only, so it runs before anything else is installed:

* ``ensure_synapse()`` installs Synapse from PyPI into its own virtualenv
  (``.venv-synapse``; its dependencies never mix with the bot's);
* ``Homeserver(dir, port)`` writes a loopback-only config (no key servers,
  test-friendly rate limits, a random registration shared secret), starts it,
  waits for ``/health`` and stops it; the same directory can be started again;
* ``Homeserver.register()`` creates accounts with the shared-secret admin API;
* ``Homeserver(..., federation_port=P)`` also listens for federation on 127.0.0.1:P with TLS
  (a self-signed certificate made with Synapse's own ``cryptography``) under the server name
  ``localhost:P``; ``federation(dir, n)`` starts ``n`` such servers that federate with each
  other on loopback (see ../shared/MATRIX_NOTES.md for why each setting is needed).

Used by ``scripts/quickstart``, ``tests/conftest.py`` and ``scripts/bench*``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
SYNAPSE_VENV = REPO / ".venv-synapse"
SYNAPSE_REQUIREMENT = "matrix-synapse>=1.163,<2"

# Generous limits: tests and bulk bot work would otherwise hit 429 at once.
# A test that wants a 429 overrides one of them (see ``overrides``).
_UNLIMITED = {"per_second": 10_000, "burst_count": 10_000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_registration": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_admin_redaction": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10_000,
        "sleep_delay": 1,
        "reject_limit": 10_000,
        "concurrent": 1000,
    },
}


class HomeserverError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[localhs] {message}", file=sys.stderr, flush=True)


def ensure_synapse(venv: Path = SYNAPSE_VENV) -> Path:
    """Install Synapse into ``venv`` unless it is already there; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == SYNAPSE_REQUIREMENT:
        return python
    if not python.exists():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"installing {SYNAPSE_REQUIREMENT} into {venv.name} (about a minute, once)")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            SYNAPSE_REQUIREMENT,
        ],
        check=True,
    )
    stamp.write_text(SYNAPSE_REQUIREMENT)
    return python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Homeserver:
    """One Synapse in ``directory``, listening for clients on 127.0.0.1:``port``."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int,
        synapse_python: Path | None = None,
        server_name: str = "localhost",
        overrides: dict[str, Any] | None = None,
        federation_port: int | None = None,
        peers: list[str] | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.port = port
        self.federation_port = federation_port
        # An explicit port in the name: other servers reach it there, without .well-known/SRV.
        self.server_name = f"localhost:{federation_port}" if federation_port else server_name
        self.peers = list(peers or [])
        self.synapse_python = synapse_python or ensure_synapse()
        self.overrides = overrides or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "homeserver.yaml"
        self.log_path = self.directory / "homeserver.log"
        self._secrets_path = self.directory / "secrets.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --------------------------------------------------------------- config

    def _secrets(self) -> dict[str, str]:
        if self._secrets_path.exists():
            data: dict[str, str] = json.loads(self._secrets_path.read_text())
            return data
        data = {
            name: secrets.token_urlsafe(32)
            for name in ("registration_shared_secret", "macaroon_secret_key", "form_secret")
        }
        self._secrets_path.write_text(json.dumps(data))
        self._secrets_path.chmod(0o600)
        return data

    @property
    def shared_secret(self) -> str:
        return self._secrets()["registration_shared_secret"]

    def config(self) -> dict[str, Any]:
        d = self.directory
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(d / "homeserver.pid"),
            "public_baseurl": self.url + "/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(d / "log.config"),
            "media_store_path": str(d / "media_store"),
            "signing_key_path": str(d / "signing.key"),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": False,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "federation_domain_whitelist": [],
            **self._secrets(),
            **RATE_LIMITS,
        }
        if self.federation_port:
            config["listeners"].append(
                {
                    "port": self.federation_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": True,
                    "x_forwarded": False,
                    "resources": [{"names": ["federation"], "compress": False}],
                }
            )
            config.update(
                {
                    "tls_certificate_path": str(d / "tls.crt"),
                    "tls_private_key_path": str(d / "tls.key"),
                    "federation_verify_certificates": False,
                    "ip_range_whitelist": ["127.0.0.1/32"],
                    "federation_domain_whitelist": self.peers,
                    # A peer that was down is retried within seconds, not minutes.
                    "federation": {
                        "destination_min_retry_interval": "2s",
                        "destination_retry_multiplier": 1.5,
                        "destination_max_retry_interval": "10s",
                    },
                }
            )
        return _deep_merge(config, self.overrides)

    def _write_config(self) -> None:
        (self.directory / "log.config").write_text(
            "version: 1\n"
            "formatters:\n  plain:\n    format: '%(asctime)s %(levelname)s %(name)s: %(message)s'\n"
            "handlers:\n  file:\n    class: logging.FileHandler\n"
            f"    filename: {json.dumps(str(self.log_path))}\n    formatter: plain\n"
            "root:\n  level: WARNING\n  handlers: [file]\n"
            "disable_existing_loggers: false\n"
        )
        if self.federation_port and not (self.directory / "tls.crt").exists():
            self._make_certificate()
        # JSON is valid YAML: no YAML library needed here.
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        if not (self.directory / "signing.key").exists():
            subprocess.run(
                [
                    str(self.synapse_python),
                    "-m",
                    "synapse.app.homeserver",
                    "-c",
                    str(self.config_path),
                    "--generate-keys",
                ],
                check=True,
                capture_output=True,
                cwd=self.directory,
            )

    def _make_certificate(self) -> None:
        """A self-signed certificate for ``localhost`` (peers do not verify it)."""
        script = (
            "import datetime, sys\n"
            "from cryptography import x509\n"
            "from cryptography.hazmat.primitives import hashes, serialization\n"
            "from cryptography.hazmat.primitives.asymmetric import ec\n"
            "from cryptography.x509.oid import NameOID\n"
            "key = ec.generate_private_key(ec.SECP256R1())\n"
            "name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'localhost')])\n"
            "now = datetime.datetime.now(datetime.timezone.utc)\n"
            "cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)\n"
            "    .public_key(key.public_key()).serial_number(x509.random_serial_number())\n"
            "    .not_valid_before(now - datetime.timedelta(days=1))\n"
            "    .not_valid_after(now + datetime.timedelta(days=3650))\n"
            "    .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost')]),\n"
            "        critical=False).sign(key, hashes.SHA256()))\n"
            "open(sys.argv[1], 'wb').write(cert.public_bytes(serialization.Encoding.PEM))\n"
            "open(sys.argv[2], 'wb').write(key.private_bytes(serialization.Encoding.PEM,\n"
            "    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))\n"
        )
        subprocess.run(
            [
                str(self.synapse_python),
                "-c",
                script,
                str(self.directory / "tls.crt"),
                str(self.directory / "tls.key"),
            ],
            check=True,
            capture_output=True,
        )
        (self.directory / "tls.key").chmod(0o600)

    # ------------------------------------------------------------ lifecycle

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start(self, timeout: float = 60) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self._write_config()
        log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(self.synapse_python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.directory,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in a terminal reaches our caller, which stops it in order.
            start_new_session=True,
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise HomeserverError(
                    f"synapse exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.stop()
                raise HomeserverError(f"synapse not healthy after {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-lines:])

    # ---------------------------------------------------------------- users

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def register(self, localpart: str, password: str, *, admin: bool = False) -> dict[str, Any]:
        """Register ``@localpart:server`` through the shared-secret admin API.

        Returns the response (``user_id``, ``access_token``, ``device_id``).
        Raises ``HomeserverError`` if the name is taken (``M_USER_IN_USE``).
        """
        for _ in range(20):
            _, nonce_body = self.call("GET", "/_synapse/admin/v1/register")
            nonce = nonce_body["nonce"]
            parts = (nonce, localpart, password, "admin" if admin else "notadmin")
            message = b"\x00".join(part.encode("utf8") for part in parts)
            mac = hmac.new(self.shared_secret.encode(), message, digestmod=hashlib.sha1)
            status, body = self.call(
                "POST",
                "/_synapse/admin/v1/register",
                {
                    "nonce": nonce,
                    "username": localpart,
                    "password": password,
                    "admin": admin,
                    "mac": mac.hexdigest(),
                },
            )
            if status == 200:
                return body
            if status == 429:
                time.sleep(body.get("retry_after_ms", 500) / 1000)
                continue
            raise HomeserverError(f"registering {localpart}: {status} {body}")
        raise HomeserverError(f"registering {localpart}: rate limited")

    def login(self, localpart: str, password: str) -> dict[str, Any]:
        status, body = self.call(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            },
        )
        if status != 200:
            raise HomeserverError(f"login as {localpart}: {status} {body}")
        return body

    def exempt_from_ratelimit(self, admin_token: str, user_id: str) -> None:
        """Production advice for the bot account; tests use it for their load generators."""
        status, body = self.call(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
            token=admin_token,
        )
        if status != 200:
            raise HomeserverError(f"override_ratelimit for {user_id}: {status} {body}")


def federation(directory: Path, count: int = 2, **options: Any) -> list[Homeserver]:
    """``count`` homeservers under ``directory`` that federate with each other on loopback.

    Ports are chosen once and kept in ``directory/ports.json``, so a cached set keeps its
    server names (which are part of every id in it). Not started: call ``start()``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ports_file = directory / "ports.json"
    ports: list[list[int]] = json.loads(ports_file.read_text()) if ports_file.exists() else []
    while len(ports) < count:
        ports.append([free_port(), free_port()])
    ports_file.write_text(json.dumps(ports))
    names = [f"localhost:{fed}" for _, fed in ports[:count]]
    return [
        Homeserver(
            directory / f"hs{index + 1}",
            port=client,
            federation_port=fed,
            peers=[name for name in names if name != names[index]],
            **options,
        )
        for index, (client, fed) in enumerate(ports[:count])
    ]


def main(argv: list[str]) -> int:
    """``python scripts/localhs.py DIR PORT``: run a homeserver in the foreground."""
    if len(argv) != 2:
        print("usage: localhs.py DIR PORT", file=sys.stderr)
        return 2
    hs = Homeserver(Path(argv[0]), port=int(argv[1]))
    hs.start()
    print(f"homeserver ready on {hs.url} (Ctrl-C stops it)", flush=True)
    try:
        while hs.proc is not None and hs.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        hs.stop()
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    raise SystemExit(main(sys.argv[1:]))
