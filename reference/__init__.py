"""The oracle: exact-as-possible softmax-family ops and gradients, special-value semantics,
error metrics and the case catalogue. Depends on nothing else in softmaxbench."""
