#!/usr/bin/env sh
# Builds infra/gpu-worker/Dockerfile and pushes it to the stack's ECR repository (created by
# infra/serverless/batch.yml with --param batchGpuWorkers=true). Run from the repository root:
#   infra/gpu-worker/push-image.sh <stage> [tag]
# The service runs zero tasks until shards arrive, so pushing after the first deploy is fine; a new
# tag takes effect with `serverless deploy --param batchGpuImageTag=<tag>`.
set -eu
stage="${1:?usage: push-image.sh <stage> [tag]}"
tag="${2:-latest}"
region="${AWS_REGION:-us-east-1}"
account="$(aws sts get-caller-identity --query Account --output text)"
repository="ai-mass-${stage}-batch-gpu-worker"
registry="${account}.dkr.ecr.${region}.amazonaws.com"
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
docker build --platform linux/amd64 -f infra/gpu-worker/Dockerfile -t "${registry}/${repository}:${tag}" .
docker push "${registry}/${repository}:${tag}"
echo "pushed ${registry}/${repository}:${tag}"
