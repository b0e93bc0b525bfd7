-- One million attempts of TestPerf10M, run ten times: spread evenly over
-- the 7 days before now, from about a million addresses and 200,000
-- usernames, few of them very active (an address's index is 10^6 r^3, a
-- username's 200,000 r^2, r uniform in [0, 1)): 40 % successes, 50 %
-- failures, 10 % refusals. Through INSERT ... SELECT the materialized
-- views count the rows as the recorder's inserts would have them counted.
INSERT INTO defender.attempts (id, ts, ts_ms, ip, username, result, blocked_by, path, user_agent, gate, observe, shared, familiar)
SELECT
    generateUUIDv4(),
    toDateTime(toUInt32(now()) - rand(1) % 604800),
    rand(2) % 1000,
    IPv4NumToString(toUInt32(167772160 + toUInt32(1000000 * pow(rand(3) / 4294967296., 3)))),
    concat('user', toString(toUInt32(200000 * pow(rand(4) / 4294967296., 2)))),
    r,
    if(r = 'blocked', [if(rand(6) % 2 = 0, 'ip', 'username')], emptyArrayString()),
    '/login', 'Mozilla/5.0 (X11; Linux x86_64) perf', 'gate-1', 0, '', 0
FROM (SELECT number, multiIf(rand(5) % 10 < 4, 'success', rand(5) % 10 < 9, 'failure', 'blocked') AS r FROM numbers(1000000))
