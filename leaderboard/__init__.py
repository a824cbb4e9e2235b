"""The mergesec leaderboard: a read-only Streamlit app over the results database (`mergesec leaderboard`)."""
