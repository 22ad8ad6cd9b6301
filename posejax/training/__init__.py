"""Training: slices and their step schedule, learning-rate and BatchNorm schedules, the optimizer, window sampling, the vmapped step, the compiled loop, the memory plan, semi-supervision."""
