#!/bin/sh
# Run one build command trusting the extra CA certificates in /tmp/build-ca/*.crt, if any.
#
# Builds behind a TLS-intercepting proxy fail with CERTIFICATE_VERIFY_FAILED unless the proxy's
# CA is trusted. The bundle is appended to the system one and handed to pip, requests, httpx and
# OpenSSL through their environment variables for this command only; it is never installed into
# the image's trust store, and the final image stages do not contain it.
set -eu
bundle=""
for f in /tmp/build-ca/*.crt; do
  [ -s "$f" ] || continue
  if [ -z "$bundle" ]; then
    bundle=$(mktemp /tmp/build-ca-bundle.XXXXXX)
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cat /etc/ssl/certs/ca-certificates.crt >>"$bundle"
  fi
  cat "$f" >>"$bundle"
  echo >>"$bundle"
done
if [ -n "$bundle" ]; then
  export PIP_CERT="$bundle" REQUESTS_CA_BUNDLE="$bundle" SSL_CERT_FILE="$bundle" CURL_CA_BUNDLE="$bundle"
fi
status=0
"$@" || status=$?
[ -n "$bundle" ] && rm -f "$bundle"
exit "$status"
