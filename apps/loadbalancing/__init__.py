"""Dynamic load balancing: the pure allocator (allocator.py); the control loop that feeds it comes later."""
