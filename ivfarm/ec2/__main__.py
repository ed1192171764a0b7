"""``python -m ivfarm.ec2 serve ...``: the ``ivfarm ec2`` commands without the top-level CLI."""
from ivfarm.cli.context_obj import AppContext
from ivfarm.cli.ec2 import ec2

if __name__ == "__main__":
    ec2.main(obj=AppContext(None), prog_name="python -m ivfarm.ec2")
