"""Tests of the protein readers: formats, bad records, data directories."""

import csv
import gzip
import logging as std_logging
import os

import gin
import hypothesis
from hypothesis import strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import seqio
import tensorflow as tf

from ankh3_tasks import prepared
from ankh3_tasks import sources
from ankh3_tasks import tasks  # pylint: disable=unused-import
from conftest import write_fasta


def _read(paths, **kwargs):
  stats = sources.ReadStats("test")
  ds = sources.protein_dataset([str(p) for p in paths], stats, **kwargs)
  records = [
      (r["id"].decode(), r["sequence"].decode()) for r in ds.as_numpy_iterator()
  ]
  return records, stats


def test_fasta_multiline_gzip_crlf_lowercase_and_stop(tmp_path):
  records = [
      ("UniRef50_A n=2 Tax=x", ["MKTA", "yiak"]),
      ("UniRef50_B", ["GSH*"]),
  ]
  for gz, newline in ((False, "\n"), (True, "\n"), (False, "\r\n")):
    path = write_fasta(
        tmp_path / f"p{gz}{len(newline)}.fa", records, gz=gz, newline=newline
    )
    got, stats = _read([path])
    assert got == [("UniRef50_A", "MKTAYIAK"), ("UniRef50_B", "GSH")]
    assert (stats.read, stats.kept, dict(stats.skipped)) == (2, 2, {})


def test_bad_fasta_records_are_counted_named_and_do_not_stop(tmp_path, caplog):
  path = write_fasta(
      tmp_path / "bad.fasta",
      [
          (None, ["MKT"]),  # before the first header
          ("ok1", ["MKT"]),
          ("no_sequence", []),  # header without sequence
          ("digits", ["MK1T"]),
          ("gaps", ["MK-T.", "AB"]),
          ("stars", ["*"]),  # empty once the stop is gone
          ("jay", ["MJT"]),
          ("ok2", ["ACDE"]),
          ("at_end", []),
      ],
  )
  with caplog.at_level(std_logging.WARNING):
    got, stats = _read([path])
  assert got == [("ok1", "MKT"), ("ok2", "ACDE")]
  assert stats.read == 9 and stats.kept == 2
  assert dict(stats.skipped) == {
      sources.SEQUENCE_BEFORE_HEADER: 1,
      sources.HEADER_WITHOUT_SEQUENCE: 2,
      sources.INVALID_CHARACTERS: 3,
      sources.EMPTY: 1,
  }
  log = caplog.text
  for name in ("no_sequence", "digits", "'-.'", "jay", "'J'", "at_end"):
    assert name in log
  assert "read 9, kept 2, skipped 7" in stats.summary()


def test_a_header_followed_by_blank_lines_is_an_empty_sequence(tmp_path):
  path = tmp_path / "blank.fasta"
  path.write_text(">empty\n\n>ok\nMKT\n\n>bare\n>spaces\n  \t\n>last\n")
  got, stats = _read([str(path)])
  assert got == [("ok", "MKT")]
  assert dict(stats.skipped) == {
      sources.EMPTY: 2,  # empty, spaces
      sources.HEADER_WITHOUT_SEQUENCE: 2,  # bare, last
  }


def test_truncated_gzip_fails_naming_file_and_record(tmp_path):
  path = write_fasta(
      tmp_path / "cut.fasta.gz",
      [(f"r{i}", ["MKTAYIAKQRQISFVKSHFSRQ" * 20]) for i in range(200)],
      gz=True,
  )
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])
  with pytest.raises(
      EOFError, match=r"cut\.fasta\.gz: unreadable after record 'r\d+'"
  ):
    list(sources.read_fasta(path, sources.ReadStats()))


def _write_table(path, sep, header, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f, delimiter=sep)
    writer.writerow(header)
    writer.writerows(rows)


@pytest.mark.parametrize("ext, sep", [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_with_named_or_guessed_columns(tmp_path, ext, sep):
  rows = [("a", "MKT"), ("b", ""), ("c", "MK1"), ("d", "acd*")]
  path = tmp_path / f"u50.{ext}"
  _write_table(path, sep, ("id", "text"), rows)
  got, stats = _read([path])
  assert got == [("a", "MKT"), ("d", "ACD")]
  assert dict(stats.skipped) == {
      sources.EMPTY: 1,
      sources.INVALID_CHARACTERS: 1,
  }
  _write_table(path, sep, ("acc", "seq_col"), rows)
  got, _ = _read([path], sequence_column="seq_col", id_column="acc")
  assert got == [("a", "MKT"), ("d", "ACD")]
  with pytest.raises(ValueError, match="no sequence column"):
    _read([path])
  with pytest.raises(ValueError, match="no sequence column 'missing'"):
    _read([path], sequence_column="missing")


def test_parquet(tmp_path):
  path = tmp_path / "train-0.parquet"
  pq.write_table(
      pa.table({"id": ["a", "b", None], "sequence": ["MKT", None, "GGS"]}),
      path,
  )
  got, stats = _read([path])
  assert got[0] == ("a", "MKT")
  assert got[1][1] == "GGS" and got[1][0].endswith(":3")
  assert dict(stats.skipped) == {sources.EMPTY: 1}


def test_one_protein_per_line(tmp_path):
  path = tmp_path / "p.txt.gz"
  with gzip.open(path, "wt") as f:
    f.write("MKT\n\nacd\nMK9\n")
  got, stats = _read([path])
  assert got == [("p.txt.gz:1", "MKT"), ("p.txt.gz:3", "ACD")]
  assert stats.skipped[sources.INVALID_CHARACTERS] == 1


def test_tfrecord_shards_skip_and_count_bad_records(tmp_path, caplog):
  path = str(tmp_path / "train-00000-of-00001.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for record_id, sequence in [
        ("a", "MKT"),
        ("b", ""),
        ("c", "MK-T"),
        ("d", "acd*"),
    ]:
      writer.write(_example(record_id, sequence))
  with caplog.at_level(std_logging.WARNING):
    got, stats = _read([path])
  assert got == [("a", "MKT"), ("d", "ACD")]
  assert dict(stats.skipped) == {
      sources.EMPTY: 1,
      sources.INVALID_CHARACTERS: 1,
  }
  assert "'c'" in caplog.text and "'-'" in caplog.text


def test_large_inputs_stream_and_give_the_same_records(tmp_path, monkeypatch):
  path = write_fasta(
      tmp_path / "p.fasta", [("a", ["MKT"]), ("b", ["M1"]), ("c", ["GG"])]
  )
  small, _ = _read([path])
  monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 0)
  streamed, stats = _read([path])
  assert streamed == small == [("a", "MKT"), ("c", "GG")]
  assert stats.skipped[sources.INVALID_CHARACTERS] == 1


def test_unknown_format_and_mixed_inputs_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="unknown protein file format"):
    sources.file_format("proteins.xlsx")
  with pytest.raises(ValueError, match="Do not mix"):
    sources.protein_dataset(["a.tfrecord", "b.fasta"])


def test_data_dir_from_gin_macro_wins_over_environment(monkeypatch):
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  with pytest.raises(ValueError, match="ANKH3_DATA_DIR"):
    sources.data_dir()
  monkeypatch.setenv(sources.DATA_DIR_ENV, "/from/env")
  assert sources.data_dir() == "/from/env"
  gin.parse_config("ANKH3_DATA_DIR = '/from/gin'")
  try:
    assert sources.data_dir() == "/from/gin"
  finally:
    gin.clear_config()


def test_uniref50_tasks_read_the_user_directory(tmp_path, monkeypatch):
  os.makedirs(tmp_path / "validation")
  write_fasta(tmp_path / "train.fasta", [("t1", ["MKTAYIAK"])])
  write_fasta(
      tmp_path / "validation" / "part-0.fasta.gz",
      [("v1", ["GSHMLEDP"]), ("v2", ["ACDEFGHIK"])],
      gz=True,
  )
  monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
  assert sources.split_files(str(tmp_path), "train") == [
      str(tmp_path / "train.fasta")
  ]
  for split, count in (("train", 1), ("validation", 2)):
    ds = seqio.get_mixture_or_task("ankh3_uniref50_multitask").get_dataset(
        {"inputs": 512, "targets": 512}, split=split, shuffle=False, seed=0
    )
    assert len(list(ds.as_numpy_iterator())) == count
  with pytest.raises(ValueError, match="No protein files for split 'test'"):
    sources.split_files(str(tmp_path), "test")


def test_non_ascii_letters_are_invalid_not_folded_into_residues():
  for raw in ("MK\u0131T", "ma\u00df", "\ufb05"):
    _, reason, _ = sources.clean_sequence(raw)
    assert reason == sources.INVALID_CHARACTERS, raw


def test_byte_order_marks_are_ignored(tmp_path):
  fasta = tmp_path / "bom.fasta"
  fasta.write_bytes("\ufeff>a\nMKT\n>b\nGG\n".encode())
  table = tmp_path / "bom.csv"
  table.write_bytes("\ufeffsequence,id\nMKT,a\n".encode())
  assert _read([fasta])[0] == [("a", "MKT"), ("b", "GG")]
  assert _read([table])[0] == [("a", "MKT")]


def test_long_csv_fields_and_binary_parquet_columns(tmp_path):
  table = tmp_path / "titin.csv"
  _write_table(table, ",", ("id", "sequence"), [("titin", "MK" * 100_000)])
  assert _read([table])[0] == [("titin", "MK" * 100_000)]
  path = tmp_path / "bin.parquet"
  pq.write_table(pa.table({"id": [b"a"], "sequence": [b"mkt"]}), path)
  assert _read([path])[0] == [("a", "MKT")]


def _example(record_id, sequence):
  return tf.train.Example(
      features=tf.train.Features(
          feature={
              "id": tf.train.Feature(
                  bytes_list=tf.train.BytesList(value=[record_id.encode()])
              ),
              "sequence": tf.train.Feature(
                  bytes_list=tf.train.BytesList(value=[sequence.encode()])
              ),
          }
      )
  ).SerializeToString()


def test_corrupt_tfrecords_and_mixed_compression(tmp_path):
  plain = str(tmp_path / "train-0.tfrecord")
  with tf.io.TFRecordWriter(plain) as writer:
    writer.write(_example("a", "MKT"))
    writer.write(b"not an example")
    writer.write(_example("b", "GGS"))
  zipped = str(tmp_path / "train-1.tfrecord.gz")
  with tf.io.TFRecordWriter(zipped, options="GZIP") as writer:
    writer.write(_example("c", "ACD"))
  got, _ = _read([plain, zipped])
  # Shards are interleaved, in a fixed order.
  assert got == [("a", "MKT"), ("c", "ACD"), ("b", "GGS")]
  assert _read([plain, zipped])[0] == got


def test_split_files_ignore_files_that_only_share_a_prefix(tmp_path):
  write_fasta(tmp_path / "train.fasta", [("a", ["MKT"])])
  write_fasta(tmp_path / "train-2.fasta", [("a", ["MKT"])])
  (tmp_path / "training_notes.txt").write_text("not proteins\n")
  assert sources.split_files(str(tmp_path), "train") == [
      str(tmp_path / "train-2.fasta"),
      str(tmp_path / "train.fasta"),
  ]


def test_only_files_the_manifest_lists_skip_the_checks(tmp_path):
  from ankh3_tasks import prepare  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import prepare_steps  # pylint: disable=g-import-not-at-top

  path = write_fasta(tmp_path / "in.fasta", [("a", ["MKT"]), ("b", ["GGS"])])
  out = tmp_path / "out"
  prepare.prepare(
      [path],
      str(out),
      prepare_steps.Settings(
          num_shards=1, num_eval_shards=1, validation_fraction=0.0
      ),
      progress=False,
  )
  listed = sources.split_files(str(out), "train")
  assert prepared.is_prepared(listed)
  stray = out / "train" / "stray.tfrecord"
  with tf.io.TFRecordWriter(str(stray)) as writer:
    writer.write(_example("bad", "MK1"))
  files = sources.split_files(str(out), "train")
  assert not prepared.is_prepared(files)
  got, stats = _read(files)
  assert sorted(got) == [("a", "MKT"), ("b", "GGS")]
  assert stats.skipped[sources.INVALID_CHARACTERS] == 1


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    st.lists(
        st.sampled_from(
            list("MKTAYLGXBZUOJ1-*. \t\r\n") + ["mk", "\u0131", "\u00e9", "**"]
        ),
        max_size=12,
    ).map("".join)
)
def test_python_and_tf_cleaning_agree(raw):
  # One rule, two twins: `clean_sequence` (FASTA, tables, text) and
  # `_clean_sequence_tf` (TFRecord shards) keep and clean alike.
  sequence, reason, _ = sources.clean_sequence(raw)
  stats = sources.ReadStats("twin")
  tf_sequence, keep = sources._clean_sequence_tf(  # pylint: disable=protected-access
      tf.constant("id"), tf.constant(raw), stats
  )
  assert bool(keep) == (not reason), raw
  if not reason:
    assert tf_sequence.numpy().decode() == sequence, raw
