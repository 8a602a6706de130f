"""asv benchmark suites for convbackends (see asv.conf.json; `asv run --python=same`)."""
