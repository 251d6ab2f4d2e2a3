# Writes OUT from TEMPLATE with the text of POLICY (agent/pretrained/policy.json) in it: the shipped
# policy compiled into the binary. Run at build time, so that a retrained policy is rebuilt in.
file(READ "${POLICY}" KTUNE_POLICY_TEXT)
string(STRIP "${KTUNE_POLICY_TEXT}" KTUNE_POLICY_TEXT)
configure_file("${TEMPLATE}" "${OUT}" @ONLY)
