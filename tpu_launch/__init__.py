"""Launch Ankh3 pretraining on Cloud TPU VMs and with XManager.

`python -m tpu_launch {create,setup,train,logs,stop,status,ssh,delete,watch}`
drives the life of a run on a (multi-host) Cloud TPU VM with `gcloud`
(`watch` keeps it alive through preemptions and crashes);
`python -m tpu_launch.xm_launch` submits the same `t5x.train` command to
Vertex AI through XManager. Both take gin files and `--gin.NAME=VALUE`
overrides and hand them to `t5x.train` unchanged, and both print what they
would do with `--dry_run`. See tpu_launch/README.md.

Importing this package imports nothing beyond the standard library.
"""
