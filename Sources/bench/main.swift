print("bench: see docs/benchmarks.md")
