"""The distributed mode's workers: ``python -m destination_predictor.worker``
runs ``PREDICT_MAX_WORKERS`` RQ workers on this machine, each with the model
loaded once, taking the jobs that API instances enqueue on Redis
(``PREDICT_QUEUE_URL``) and writing the outcome into the shared task records
(``PREDICT_TASKS_DB_URL``) and result files. ``jobs`` holds what a job runs,
``__main__`` the process that starts and supervises the workers."""
