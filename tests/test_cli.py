"""The ``gbijax`` command line: JSON summaries and one-line errors."""

import json

import pytest

from gbijax.cli import main


def test_data_summary_toy(capsys):
    assert main(["data", "summary", "toy:n_background=20000,n_signal=100,seed=1", "--compact"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_events"] == 20_100
    assert summary["n_signal"] == 100
    assert summary["n_background"] == 20_000
    assert summary["n_sr"] + summary["n_sb"] == 20_100
    assert summary["feature_names"] == ["mjj", "mj_min", "delta_mj", "tau21_min", "tau21_max"]
    assert set(summary["feature_means"]) == set(summary["feature_names"])


@pytest.mark.parametrize(
    "source, message",
    [
        ("nonsense:x", "unknown data source"),
        ("cathode:/no/such/dir", "no such directory"),
        ("lhco:/no/such/file.h5", "no such file"),
        ("toy:n_background=-1", "must be >= 0"),
        ("toy:colour=red", "bad toy option"),
    ],
)
def test_bad_source_is_one_line_error(capsys, source, message):
    assert main(["data", "summary", source]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "\n" not in err and "Traceback" not in err
