"""Sensitive staged columns encrypted at rest: round trip, the key's handling, a wrong key."""

import base64
import os
import stat

import polars as pl
import pytest

from flow_assets.destinations.staging import ParquetBatchWriter, read_batches, sensitive_file
from flow_assets.destinations.staging_crypto import ColumnCipher, local_master_key

FRAME = pl.DataFrame({"Id": ["a", "b"], "Email__c": ["ada@example.com", None], "n": [1, 2]})


def test_only_the_sensitive_columns_need_the_key(tmp_path):
    cipher = ColumnCipher(local_master_key(None, tmp_path / "staging.key"))
    with ParquetBatchWriter(tmp_path / "staged", FRAME.schema, cipher, ["Email__c"]) as writer:
        writer.write(FRAME)
    (path,) = writer.staged().files
    side = sensitive_file(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, side.name]
    assert writer.staged().rows == 2
    # The data file has the whole schema, with nulls in place of the sensitive values...
    assert pl.read_parquet(path).equals(
        FRAME.with_columns(pl.lit(None, pl.String).alias("Email__c"))
    )
    # ...which are in the side file, unreadable without the key.
    assert pl.read_parquet_schema(side) == {"Email__c": pl.String}
    with pytest.raises(pl.exceptions.ComputeError):
        pl.read_parquet(side)
    assert pl.concat(read_batches(tmp_path / "staged", cipher)).equals(FRAME)
    with pytest.raises(ValueError, match="is encrypted: reading it needs the staging key"):
        list(read_batches(tmp_path / "staged"))
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):  # another master key cannot unwrap the file's data keys
        ColumnCipher(os.urandom(32)).read(side)


def test_the_local_key(tmp_path, monkeypatch):
    key_file = tmp_path / "data" / "staging.key"
    first = local_master_key(None, key_file)
    assert len(first) == 32 and local_master_key(None, key_file) == first  # made once
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    chosen = os.urandom(32)
    assert local_master_key(base64.b64encode(chosen).decode(), key_file) == chosen
    with pytest.raises(ValueError, match="FLOWBRIDGE_STAGING_KEY must be the base64 of 32"):
        local_master_key(base64.b64encode(b"short").decode(), key_file)


def test_sensitive_columns_are_never_written_in_clear(tmp_path):
    with pytest.raises(ValueError, match="sensitive: staging them needs a cipher"):
        ParquetBatchWriter(tmp_path / "staged", FRAME.schema, None, ["Email__c"])
