"""Long-text jobs (a book chapter read aloud in chunks, state in SQLite so a manager restart
resumes them) and the per-user clip history."""
