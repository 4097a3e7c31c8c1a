"""The queue runner: takes messages from the spool and delivers them."""
