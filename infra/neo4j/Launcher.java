// Embedded Neo4j 5.26 (Community) with Bolt, for the local eventfold stack (scripts/stack/neo4j.sh).
//
//   java -cp 'lib/*' Launcher.java <home-dir> <bolt-host> <bolt-port>      (single-file source run)
//   java -cp '<classes>:lib/*' Launcher <home-dir> <bolt-host> <bolt-port>  (compiled once by neo4j.sh)
//
// Auth is disabled: any credentials are accepted (the project uses neo4j / eventfold).
// Prints "eventfold-neo4j ready bolt://<host>:<port>" once `RETURN 1` succeeded on the default database,
// then blocks until SIGTERM/SIGINT; the shutdown hook shuts the DBMS down cleanly.

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;

public class Launcher {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: Launcher <home-dir> <bolt-host> <bolt-port>");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String host = args[1];
        int port = Integer.parseInt(args[2]);

        // A transaction whose client gave up (the projector's apply timeout fired and it retries
        // the batch in halves) must not keep its locks: the server ends it after this many seconds,
        // which must stay below the projector's PROJECTOR_APPLY_TIMEOUT_MS (30 s by default).
        long txTimeout = Long.parseLong(System.getenv().getOrDefault("EVENTFOLD_NEO4J_TX_TIMEOUT_S", "25"));
        DatabaseManagementService dbms;
        try {
            dbms = new DatabaseManagementServiceBuilder(home)
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                    .setConfig(BoltConnector.advertised_address, new SocketAddress(host, port))
                    .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                    .setConfig(GraphDatabaseSettings.auth_enabled, false)
                    .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(128))
                    .setConfig(GraphDatabaseSettings.keep_logical_logs, "2 files")
                    .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(16))
                    .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                    .setConfig(GraphDatabaseSettings.udc_enabled, false)
                    .setConfig(GraphDatabaseSettings.transaction_timeout, java.time.Duration.ofSeconds(txTimeout))
                    .setConfig(GraphDatabaseSettings.lock_acquisition_timeout, java.time.Duration.ofSeconds(txTimeout))
                    .build();
        } catch (Throwable e) {
            System.err.println("eventfold-neo4j failed to start: " + e);
            e.printStackTrace();
            System.exit(1);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("eventfold-neo4j shutting down");
            try {
                dbms.shutdown();
            } catch (Throwable e) {
                System.err.println("eventfold-neo4j shutdown error: " + e);
            }
            System.out.println("eventfold-neo4j stopped");
            System.out.flush();
            stopped.countDown();
        }, "eventfold-neo4j-shutdown"));

        try {
            Object one = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME)
                    .executeTransactionally("RETURN 1 AS one", java.util.Map.of(),
                            result -> result.next().get("one"));
            if (!Long.valueOf(1L).equals(one)) {
                throw new IllegalStateException("RETURN 1 gave " + one);
            }
        } catch (Throwable e) {
            System.err.println("eventfold-neo4j failed: RETURN 1 on the default database: " + e);
            e.printStackTrace();
            System.exit(1);
        }

        System.out.println("eventfold-neo4j ready bolt://" + host + ":" + port);
        System.out.flush();
        stopped.await();
    }
}
