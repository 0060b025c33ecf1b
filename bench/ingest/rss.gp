# RSS and acknowledged/refused spans per second from a bench/ingest CSV.
# gnuplot -e "csv='x.csv'; png='x.png'; name='x'" bench/ingest/rss.gp
set terminal pngcairo size 900,420 font "sans,10"
set output png
set datafile separator ","
set key bottom right opaque
set title name
set xlabel "seconds"
set ylabel "RSS (MiB)"
set y2label "spans / s"
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set grid
plot csv using 1:2 skip 1 with lines lw 2 title "server RSS (MiB)", \
     csv using 1:6 skip 1 with lines lw 1 dt 2 lc rgb "#4e79a7" title "of which anonymous (MiB)", \
     csv using 1:4 skip 1 axes x1y2 with lines lc rgb "#6a9f58" title "acknowledged spans/s", \
     csv using 1:5 skip 1 axes x1y2 with lines lc rgb "#d1605e" title "refused spans/s"
