"""What several test modules share: files in the datasets' real on-disk formats (cifar_files,
dvs_files, ntu_files, real_samples), the official Spikformer as reference (official_reference,
official_checkpoint), local Ray clusters and MLflow servers (cluster), the real `suite run` CLI
(cli_runs), prerequisite marks (prerequisites), and the Triton interpreter runner."""
