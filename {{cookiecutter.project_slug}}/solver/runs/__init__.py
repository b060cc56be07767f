"""What lands under runs/<comp>/: source folders (oof.csv, test.csv, score.json, config.yaml), their compatibility
and staleness, the leaderboard, plots.
"""
