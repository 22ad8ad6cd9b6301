"""Model families: the temporal convolutional network, its recorded hyper-parameters, and the protocol every family implements."""
