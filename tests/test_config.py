"""The configuration file: defaults, validation messages, paths, and its reference doc (S7, M4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmax.core import config
from mailmax.core.configdoc import render

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailmax.toml"
    path.write_text(text)
    return path


def test_an_empty_file_gives_documented_defaults(tmp_path):
    settings = config.load(write(tmp_path, ""))
    assert settings.smtp.max_message_size == 25 * 1024 * 1024
    assert settings.smtp.allow_plaintext_auth is False
    assert settings.smtp.trusted_networks == []
    assert settings.data_dir == tmp_path.resolve()
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'mailmax.db'}"
    assert settings.spool_dir == tmp_path.resolve() / "queue"


def test_unknown_key_is_named_with_the_file(tmp_path):
    path = write(tmp_path, "[smtp]\nmax_hopz = 3\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert str(path.resolve()) in message
    assert "unknown key 'smtp.max_hopz'" in message


def test_bad_values_say_what_is_allowed(tmp_path):
    path = write(
        tmp_path,
        '[[listeners]]\nservice = "smtpx"\nport = 25\n\n'
        '[[listeners]]\nservice = "smtp"\naddress = "localhost"\nport = 70000\n'
        '[smtp]\ntrusted_networks = ["10.0.0.0/33"]\n',
    )
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert "listeners.0.service: 'smtpx' is not allowed; use one of" in message
    assert "'localhost' is not an IP address" in message
    assert "listeners.1.port" in message and "65535" in message
    assert "'10.0.0.0/33' is not an address or network" in message


def test_two_listeners_on_one_port_are_refused(tmp_path):
    text = '[[listeners]]\nservice = "smtp"\nport = 2525\n' * 2
    with pytest.raises(config.ConfigError, match=r"two listeners on 127\.0\.0\.1:2525"):
        config.load(write(tmp_path, text))


def test_auth_delay_above_its_maximum_is_refused():
    """A first-failure delay longer than the longest delay is refused when the file is read
    (at start, by `config check` and by a reload), not when the first log-in fails."""
    with pytest.raises(config.ConfigError, match=r"failure_delay \(30\) must not exceed"):
        config.parse({"auth": {"failure_delay": 30}})


def test_missing_file_and_broken_toml_say_what_to_do(tmp_path):
    with pytest.raises(config.ConfigError, match="mailmax init"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[smtp\n"))


def test_explicit_data_dir_and_absolute_paths(tmp_path):
    data = tmp_path / "data"
    settings = config.load(
        write(tmp_path, f'[server]\ndata_dir = "{data}"\n[spool]\ndir = "/var/spool/x"\n')
    )
    assert settings.data_dir == data
    assert settings.spool_dir == Path("/var/spool/x")
    assert settings.path("tls/cert.pem") == data / "tls" / "cert.pem"


def test_reference_doc_lists_every_key():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    start = doc.index("<!-- reference -->\n") + len("<!-- reference -->\n")
    end = doc.index("<!-- /reference -->")
    assert doc[start:end] == render(), "regenerate with: python -m mailmax.core.configdoc"
