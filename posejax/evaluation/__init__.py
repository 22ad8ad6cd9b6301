"""Evaluation: Protocols #1-#3 and MPJVE on a device-resident test set, trajectories, the action classifier and routing, restoring runs, reports and the seed comparison."""
