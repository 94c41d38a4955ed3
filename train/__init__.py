"""kdlive's training side: data pipeline (this issue), then teacher, students and report."""
