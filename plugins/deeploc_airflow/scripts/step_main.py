"""spark-submit's main file for one DeepLocations stage on EMR; the work is in ``deeploc.step``."""
import sys

if __name__ == "__main__":  # Airflow imports every file under plugins/ too
    from deeploc.step import run_and_record

    sys.exit(run_and_record(sys.argv[1], sys.argv[2:]))
