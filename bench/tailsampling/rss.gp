# RSS over time of the four runs of bench/tailsampling/run.sh.
# gnuplot -e "dir='docs/bench'; png='docs/bench/tailsampling.png'" bench/tailsampling/rss.gp
set terminal pngcairo size 900,440 font "sans,10" noenhanced
set output png
set datafile separator ","
set key top left opaque
set title "Tail-sampling gateway at 20k spans/s: RSS"
set xlabel "seconds"
set ylabel "RSS (MiB)"
set yrange [0:*]
set grid
plot dir."/tailsampling-tail_sampling_upstream-50s.csv" using 1:2 skip 1 with lines lw 2 lc rgb "#d1605e" title "upstream, decision_wait 50s", \
     dir."/tailsampling-tail_sampling_upstream-30s.csv" using 1:2 skip 1 with lines lw 2 dt 2 lc rgb "#d1605e" title "upstream, decision_wait 30s", \
     dir."/tailsampling-tail_sampling-50s.csv" using 1:2 skip 1 with lines lw 2 lc rgb "#4e79a7" title "Sightline, decision_wait 50s", \
     dir."/tailsampling-tail_sampling-30s.csv" using 1:2 skip 1 with lines lw 2 dt 2 lc rgb "#4e79a7" title "Sightline, decision_wait 30s"
