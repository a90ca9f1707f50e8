"""Pictures and files for people: overlays and grids, charts, the comparison report, HTML."""
