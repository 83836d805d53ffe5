"""``python -m aligndepth``: the command line (how torchrun and accelerate launch start it:
``torchrun --nproc-per-node N -m aligndepth audit ...``)."""

from aligndepth.cli import main

if __name__ == "__main__":
    main()
