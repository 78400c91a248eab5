#!/usr/bin/env sh
# Creates footfall's topics on a Fluvio cluster, with the fluvio CLI pointed at it
# (`fluvio profile`). PARTITIONS must equal [transport] partitions in footfall's config;
# it bounds the parallelism: at most PARTITIONS workers share a topic's partitions.
#
#   PARTITIONS=4 REPLICATION=3 deploy/fluvio/create-topics.sh
set -eu
P="${PARTITIONS:-4}"
R="${REPLICATION:-1}"
# 7 days of input, kept for replays and for workers that were down.
RETAIN="${RETENTION:-7d}"

# Input: customer topics keyed by customer key, store topics keyed by store_id.
for t in clickstream transactions customers inventory; do
  fluvio topic create "$t" --partitions "$P" --replication "$R" --retention-time "$RETAIN"
done
# Reference data every worker reads whole: few records, one partition is plenty.
for t in stores weather; do
  fluvio topic create "$t" --partitions 1 --replication "$R" --retention-time "$RETAIN"
done
# Output: what marketing automation, pricing and ops consume.
for t in notifications markdowns alerts suppressions conversions deadletter; do
  fluvio topic create "$t" --partitions "$P" --replication "$R" --retention-time "$RETAIN"
done
fluvio topic list
