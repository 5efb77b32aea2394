import sys, time, cProfile, pstats
sys.path.insert(0,'.')
from _common import Edges, cpu_seconds, quiet_logs
from controller import daemon
def main():
    quiet_logs()
    with Edges(1000, latency=0.005, pools=4) as e:
        cfg = e.config(concurrency=32, deadline=10)
        rec = daemon.build(cfg, dry_run=False)
        for i in range(4): r=rec.tick(); print(i, r.applied)
        # breakdown
        import controller.reconcile as R
        orig_scrape = rec._scrape
        t={}
        def timed(states):
            c=cpu_seconds(); a=time.perf_counter(); out=orig_scrape(states); t['scrape']=(time.perf_counter()-a, cpu_seconds()-c); return out
        rec._scrape=timed
        for i in range(3):
            c=cpu_seconds(); a=time.perf_counter(); r=rec.tick(); w=time.perf_counter()-a; cc=cpu_seconds()-c
            ok=sum(1 for p in r.plans for m in p.members if m.sample is not None)
            print(f"tick {w:.3f}s cpu {cc:.3f} scrape {t['scrape'][0]:.3f}s cpu {t['scrape'][1]:.3f} ok {ok}")
        c=cpu_seconds(); a=time.perf_counter()
        for p in cfg.pools: rec.bigip.read_pool(p.ref)
        print("4 pool reads", time.perf_counter()-a, cpu_seconds()-c)
        rec._scrape=orig_scrape
        cProfile.runctx("rec.tick()", globals(), locals(), "/tmp/tick.prof")
        p=pstats.Stats("/tmp/tick.prof"); p.sort_stats("tottime").print_stats(25)
        daemon.close(rec)
if __name__=="__main__": main()
