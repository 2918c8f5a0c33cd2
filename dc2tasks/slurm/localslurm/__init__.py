"""A Slurm emulator for machines without Slurm (the local backend). See `emulator`."""
