"""`suite doctor`: checks of a machine's setup that the test suite cannot make in CI.

`suite doctor --gpu` (suite.doctor.gpu) runs the GPU path end to end on a CUDA machine and writes
a JSON report: the CUDA-only tests, the Triton LIF against the reference on the device, short
fp16/bf16 training (suite.doctor.training), `suite bench` on CUDA, and a 1-GPU `suite run`.
"""
