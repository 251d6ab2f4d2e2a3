# Sourced after unpack-bundle.sh by the scripts that run the bundle's CUDA binaries on a GPU
# machine: finds NVRTC and cuBLAS (the toolkit's, else the CUDA wheels beside the machine's
# PyTorch), points the tests at the bundle's binaries ($KTUNE_BINARY, $KTUNE_RUNNER,
# $KTUNE_CUDA_RUNNER) and the CUDA headers, and changes to /tmp.
extra=/usr/local/cuda/lib64
for d in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, q, "lib") for p in nvidia.__path__ for q in os.listdir(p)))' 2>/dev/null); do
  extra=$extra:$d
done
export LD_LIBRARY_PATH="$kt/lib:$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KTUNE_BINARY="$kt/bin/ktune" KTUNE_RUNNER="$kt/bin/ktune-runner" KTUNE_CUDA_RUNNER="$kt/bin/ktune-cuda-runner"
export KTUNE_CACHE_DIR=/tmp/ktune-cache
[ -d /usr/local/cuda/include ] && export KTUNE_CUDA_INCLUDE=/usr/local/cuda/include
cd /tmp
