-- One database per party in deploy/docker-compose.yml's PostgreSQL
-- (node.conf: database "postgresql://comity@postgres:5432/comity_xx").
-- Run once, by the postgres image, when its volume is empty.
CREATE DATABASE comity_fr OWNER comity;
CREATE DATABASE comity_jp OWNER comity;
CREATE DATABASE comity_de OWNER comity;
