#!/usr/bin/env sh
# For a CI without OIDC ID tokens: the pipeline holds an attestd token,
# scoped to its own repositories, in its secret store (ATTESTD_TOKEN), e.g.
#   attestctl tokens create --name ci-acme-app --role signer \
#     --repository 'registry.example.com/acme/app/**' -o json
# Prefer the OIDC examples beside this file where the CI offers ID tokens:
# a stolen token works from anywhere until it is revoked.
set -eu
: "${ATTESTD_URL:?}" "${ATTESTD_TOKEN:?the scoped signer token from the CI secret store}"
IMAGE=registry.example.com/acme/app/web
COMMIT=$(git rev-parse HEAD)
DIGEST=$(attestctl push app.tar --repo "$IMAGE" --tag "$COMMIT" -o json | jq -r .digest)
attestctl sign "$IMAGE@$DIGEST" --key release
attestctl provenance "$IMAGE@$DIGEST" --key release --source-repo https://git.example.com/acme/app --commit "$COMMIT"
attestctl sbom "$IMAGE@$DIGEST" --wait
attestctl verify "$IMAGE@$DIGEST" --policy production
