import sys

from controller.sim.bigip.cli import main

sys.exit(main())
