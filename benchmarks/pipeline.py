"""Pipeline benchmark: bare model.encode vs publish → worker → Qdrant (same as `astrostream bench pipeline`)."""

from services.bench import pipeline

if __name__ == "__main__":
    pipeline(prog_name="benchmarks/pipeline.py")
