"""Names shared by the run engine (which logs) and the leaderboard (which reads) in MLflow.

One place for them so that a renamed metric cannot silently empty a leaderboard column.
"""

# Tags on every `suite run` MLflow run.
TAG_KIND = "suite.kind"  # "run" | "eval" | "sweep" | "trial" | "leaderboard"
TAG_TASK = "suite.task"
TAG_PROTOCOL = "suite.protocol"
TAG_MODEL = "suite.model"
TAG_TIME_STEPS = "suite.time_steps"
TAG_DATA = "suite.data"  # "synthetic" or "real:<fingerprint>"
TAG_SEED = "suite.seed"
TAG_VERSION = "suite.version"
TAG_GIT_COMMIT = "suite.git_commit"
TAG_DEVICE = "suite.device"
TAG_LIF_BACKEND = "suite.lif_backend"  # what the LIF layers ran on (native C++, Triton, torch kernels)
TAG_RAY_ADDRESS = "suite.ray_address"
TAG_CONFIG_HASH = "suite.config_hash"  # identical configs (seed excluded) share it: seeds aggregate

DATA_SYNTHETIC = "synthetic"

KIND_RUN = "run"  # a `suite run`: a model trained in the suite
KIND_EVAL = "eval"  # a `suite eval`: an existing checkpoint evaluated
# Tags on every `suite eval` MLflow run, besides the ones above.
TAG_CHECKPOINT_SHA256 = "suite.checkpoint_sha256"
TAG_CHECKPOINT_FORMAT = "suite.checkpoint_format"  # "suite" | "official" (key names), and where the weights were
TAG_CHECKPOINT_ORIGIN = "suite.checkpoint_origin"  # "mlflow-run:<run id>" or the file's absolute path
TAG_MODEL_CONFIG = "suite.model_config"  # the resolved SpikformerConfig, as JSON

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
M_EVAL_SAMPLES = "eval_samples"  # `suite eval`: samples evaluated (the whole eval split)

# NeuroBench's metrics (`suite eval --neurobench`), computed by the `neurobench` package.
NEUROBENCH_PREFIX = "neurobench."
M_NB_FOOTPRINT = NEUROBENCH_PREFIX + "footprint_bytes"
M_NB_CONNECTION_SPARSITY = NEUROBENCH_PREFIX + "connection_sparsity"
M_NB_ACCURACY = NEUROBENCH_PREFIX + "classification_accuracy"  # a fraction, not percent
M_NB_ACTIVATION_SPARSITY = NEUROBENCH_PREFIX + "activation_sparsity"
M_NB_DENSE = NEUROBENCH_PREFIX + "synops_dense"  # per sample
M_NB_EFFECTIVE_MACS = NEUROBENCH_PREFIX + "synops_effective_macs"  # per sample
M_NB_EFFECTIVE_ACS = NEUROBENCH_PREFIX + "synops_effective_acs"  # per sample

# Experiment that holds the generated leaderboards.
LEADERBOARD_EXPERIMENT = "leaderboards"
DEFAULT_EXPERIMENT = "spikformer-suite"
