"""Chunking of tiled work (FFT and Winograd tiles) so a workspace stays bounded."""


def tile_chunks(batch, rows, rows_per_chunk):
    """``(samples, rows)`` slice pairs covering ``batch x rows`` tile rows in chunks.

    Whole samples go together while ``rows_per_chunk`` holds at least one sample's rows;
    otherwise each sample's rows are split.
    """
    if rows_per_chunk >= rows:
        per = max(1, rows_per_chunk // rows)
        for n0 in range(0, batch, per):
            yield slice(n0, min(batch, n0 + per)), slice(0, rows)
    else:
        for n in range(batch):
            for t0 in range(0, rows, rows_per_chunk):
                yield slice(n, n + 1), slice(t0, min(rows, t0 + rows_per_chunk))
