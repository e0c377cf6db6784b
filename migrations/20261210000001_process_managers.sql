-- Process managers keep their inbox, instances and commands in a PostgreSQL read model of their
-- own (schema rm_<name>_g<generation>), owned by the read model's role like any other.
SELECT eventfold_declare_read_model('discovery');
SELECT eventfold_declare_read_model('workflows');
