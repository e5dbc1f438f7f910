"""Operations around the core: control socket, metrics, status, titles, sd_notify, pid
file, logs."""
