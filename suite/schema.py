"""Names shared by the run engine (which logs) and the leaderboard (which reads) in MLflow.

One place for them so that a renamed metric cannot silently empty a leaderboard column.
"""

# Tags on every `suite run` MLflow run.
TAG_KIND = "suite.kind"  # "run" | "sweep" | "trial" | "leaderboard"
TAG_TASK = "suite.task"
TAG_PROTOCOL = "suite.protocol"
TAG_MODEL = "suite.model"
TAG_TIME_STEPS = "suite.time_steps"
TAG_DATA = "suite.data"  # "synthetic" or "real:<fingerprint>"
TAG_SEED = "suite.seed"
TAG_VERSION = "suite.version"
TAG_GIT_COMMIT = "suite.git_commit"
TAG_DEVICE = "suite.device"
TAG_RAY_ADDRESS = "suite.ray_address"
TAG_CONFIG_HASH = "suite.config_hash"  # identical configs (seed excluded) share it: seeds aggregate

DATA_SYNTHETIC = "synthetic"

# Metrics, logged per epoch (step = epoch) by rank 0.
M_LOSS = "train_loss"
M_TOP1 = "top1"  # percent, exact over the whole eval set
M_TOP5 = "top5"
M_BEST_TOP1 = "best_top1"
M_EVAL_LOSS = "eval_loss"
M_LR = "lr"
M_SAMPLES_PER_S = "samples_per_s"  # training throughput, all workers together
M_SOPS = "sops_g"  # synaptic operations per sample, in G
M_ENERGY = "energy_mj"  # theoretical energy per sample, mJ
M_FIRING_RATE = "firing_rate"  # mean firing rate over all LIF layers
M_PARAMS = "params_m"  # parameters, in millions
M_PEAK_MEMORY = "peak_memory_mb"
M_EPOCH = "epoch"

# Experiment that holds the generated leaderboards.
LEADERBOARD_EXPERIMENT = "leaderboards"
DEFAULT_EXPERIMENT = "spikformer-suite"
